"""The error every launch step raises when the cluster or the runs root cannot take a submission."""


class LaunchError(RuntimeError):
    """The cluster cannot take the submission; one line saying why and what to do."""
