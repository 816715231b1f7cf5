"""`tunewise serve` as a subprocess (`ServerProcess`, `free_port`): the launcher lives in `tunewise.endpoint`,
below the layers that start a server without importing it (the agent apps); this is its name inside the server
package."""

from tunewise.endpoint import ServerProcess, free_port

__all__ = ["ServerProcess", "free_port"]
