"""Print command N (1 or 2) of README.md's "Two commands" block, exactly as written.

CI runs the README's commands through this, so the README cannot drift from
what CI proves: a command that stops working fails CI as it is printed there.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def commands(text: str) -> list[str]:
    section = text.split("## Two commands", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    if block is None:
        raise SystemExit("README.md: no ```bash block under '## Two commands'")
    return [ln.strip() for ln in block.group(1).splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]


if __name__ == "__main__":
    which = int(sys.argv[1])
    cmds = commands(README.read_text(encoding="utf-8"))
    if len(cmds) != 2:
        raise SystemExit(f"README.md: expected 2 commands under '## Two commands', got {cmds}")
    print(cmds[which - 1])
