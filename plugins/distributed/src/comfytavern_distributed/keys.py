"""Every Redis key and channel name in one place, under one prefix (documented in docs/deployment.md)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GROUP", "Keys"]

#: The consumer group every executing process reads the run stream with.
GROUP = "executors"


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    @property
    def stream(self) -> str:
        """The run queue (a Stream; one entry per submitted run)."""
        return f"{self.prefix}:runs"

    @property
    def events(self) -> str:
        """Pub/sub channel carrying run events (batched, coalesced) between instances."""
        return f"{self.prefix}:events"

    @property
    def cancel(self) -> str:
        """Pub/sub channel carrying interrupt requests (a run id each)."""
        return f"{self.prefix}:cancel"

    @property
    def revocations(self) -> str:
        """Pub/sub channel carrying ended credentials (``comfytavern.revocation.Revocation``)."""
        return f"{self.prefix}:revocations"

    @property
    def workers(self) -> str:
        """Sorted set: executing process id -> last heartbeat (ms since the epoch)."""
        return f"{self.prefix}:workers"

    @property
    def active(self) -> str:
        """Sorted set: ids of queued and running runs -> submission time (ms)."""
        return f"{self.prefix}:active"

    def state(self, run_id: str) -> str:
        """Hash: the shared state of one run (status, owner, worker, snapshot...)."""
        return f"{self.prefix}:run:{run_id}"

    def lease(self, run_id: str) -> str:
        """String with a TTL: the id of the worker executing the run, renewed by its heartbeat."""
        return f"{self.prefix}:lease:{run_id}"
