"""`python tests/crash_after_checkpoint.py STAGE ARGS...`: run a ttscale stage and SIGKILL every process right
after the first checkpoint is on disk, the way a preempted or crashed job dies (no clean shutdown, no final save).

Launched by tests/test_sharded_training.py under `accelerate launch`; the callback is added to every Trainer
(SFTTrainer too), so the stages themselves carry no test hook.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class CrashAfterSave(transformers.TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank has written its part of the checkpoint
        os.kill(os.getpid(), signal.SIGKILL)


_init = transformers.Trainer.__init__


def _init_with_crash(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.add_callback(CrashAfterSave())


transformers.Trainer.__init__ = _init_with_crash

if __name__ == "__main__":
    from ttscale.cli import main

    sys.exit(main(sys.argv[1:]))
