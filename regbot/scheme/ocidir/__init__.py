"""The OCI image layout scheme (`ocidir://path[:tag][@digest]`)."""

from regbot.scheme.ocidir.ocidir import OCIDirScheme

__all__ = ["OCIDirScheme"]
