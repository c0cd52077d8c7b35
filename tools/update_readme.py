"""Regenerate README.md's model table from the registry: python tools/update_readme.py"""

import re
from pathlib import Path

from ganzoo.cli import model_table

readme = Path(__file__).resolve().parent.parent / "README.md"
text = readme.read_text()
new = re.sub(r"(<!-- model-table:start -->\n).*?(<!-- model-table:end -->)",
             lambda m: m.group(1) + model_table() + m.group(2), text, flags=re.S)
readme.write_text(new)
print("README.md model table:", "updated" if new != text else "already current")
