"""Format versions (semver). See docs/contracts/versioning.md for the policy.

FORMAT_VERSION covers the session folder, events/frames Parquet schemas and the
dataset layout. CAPTION_VERSION is the in-band caption/sidecar protocol written by
obs_script/ (it must stay readable by older aligners: new record kinds are ignored).
"""

FORMAT_VERSION = "1.4.0"
CAPTION_VERSION = 1
