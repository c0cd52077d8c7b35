"""The experiment workflow: a queue of training runs, their evaluation and a report.

- :mod:`.queue`: the queue file (YAML), checked in full before anything runs;
- :mod:`.runner`: ``ganzoo queue run`` / ``status``: each experiment trained by the real trainer
  in a child process, evaluated, recorded; state kept in files so that any interruption
  resumes;
- :mod:`.runs`: what a run folder holds (steps, training time, evaluations, sample grids);
- :mod:`.report`: ``ganzoo report``, a static HTML page and a Markdown table;
- the user's queues ship in ``ganzoo/queues/`` (``ganzoo queue list``).

Nothing here is imported by ``import ganzoo``; see docs/experiments.md.
"""
