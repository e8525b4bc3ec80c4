"""code_execution (reference §12): the sandbox that runs the model's bash commands and text-editor
requests, and the containers whose files persist between them.

    containers.py  Containers: create / get / touch / sweep, a container's files (snapshot,
                   changes, place)
    sandbox.py     Sandbox: bash() and edit() on a container's files; Execution;
                   SandboxUnavailableError
    bwrap.py       what a sandbox sees of the host (bubblewrap's command line), and as whom it runs
    supervision.py the host's side of one run: feeding, draining, collecting, the backstop
    transfer.py    the container's files into a sandbox and back (the workspace stream), host side
    supervisor.py  the sandbox's pid 1 (runs inside, with the system's python3)
    editor.py      the text editor (runs inside, with the system's python3)
"""

from sijo.tools.code_execution.containers import Changes, Container, Containers, OutputFile
from sijo.tools.code_execution.sandbox import Execution, Sandbox, SandboxUnavailableError

__all__ = [
    "Changes",
    "Container",
    "Containers",
    "Execution",
    "OutputFile",
    "Sandbox",
    "SandboxUnavailableError",
]
