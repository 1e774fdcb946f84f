"""Running a stage's numbered parts in-process or on a Ray cluster (one model replica per actor).

Sits below every model-running stage: it imports no other ttscale subpackage, only the top-level config,
so `generate` (inference), `label` (train) and `search` can all call it. The stage hands it a picklable
`Work` (how a replica loads its models once, and how it turns one part's input into that part's result)
and a `write` callback; the executor runs the parts and the driver alone writes what comes back.
"""
