"""The two things a stage gives the executor: its options group (`ExecutorArgs`) and its `Work`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

from ttscale.config import field

Write = Callable[[int, Any], None]


@dataclass(kw_only=True)
class ExecutorArgs:
    """Where a stage's parts run (inherited by label, search and generate); none of these change results."""
    executor: Literal["local", "ray"] = field(
        "local", run_key=False, help="local: this process; ray: a pool of Ray actors, each holding one model "
        "replica, pulling parts from a queue (pip install 'ttscale[ray]')")
    ray_address: str | None = field(None, run_key=False,
                                    help="executor ray: the cluster to join; none starts a local one, `auto` "
                                         "joins the one `ray start` made on this node, or ray://HOST:10001")
    replicas: int = field(1, ge=1, run_key=False, help="executor ray: model replicas (actors) to run at once")
    replica_cpus: float = field(1.0, ge=0, run_key=False, help="executor ray: CPUs each replica reserves")
    replica_gpus: float = field(0.0, ge=0, run_key=False,
                                help="executor ray: GPUs each replica reserves (1 = one GPU per vLLM engine)")


class Work:
    """What a replica does; subclass as a dataclass of plain options so it pickles to Ray workers."""

    def setup(self, replica: int | None) -> Any:
        """Load the models (once per replica process); replica is None in-process, else its number."""
        raise NotImplementedError

    def run(self, state: Any, payload: Any) -> Any:
        """One part's result from its payload (must not depend on which replica runs it)."""
        raise NotImplementedError

    def close(self, state: Any) -> None:
        """Release what setup opened (in-process only: a Ray replica ends with its process)."""
