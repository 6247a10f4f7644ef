"""Local stand-in for the WhatsApp Cloud API, for tests, benchmarks, the demo and campaign rehearsals."""

from .process import SandboxHandle, SandboxStartError, start_sandbox
from .server import create_app
from .settings import SandboxSettings

__all__ = ["SandboxHandle", "SandboxSettings", "SandboxStartError", "create_app", "start_sandbox"]
