"""What every stage's run shares, whichever stage it is: the device and precision it runs with and the
exceptions that end it early (runtime), progress reporting (progress), the stage folder it owns (folder),
the result and failure records it leaves (record) and the random streams a resume restores (rng).

Nothing here is imported by this package's __init__: `record` and `folder` carry no torch, so the job layer
and the command lines read them without loading it.
"""
