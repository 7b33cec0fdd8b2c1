"""The web dashboard: `python -m bgjobs.dashboard` or `kubectl bgjobs dashboard`.

Pages are rendered from a watch cache of the bgjobs kinds (cache.py), never from a listing
per page view; live updates reach the page by server-sent events from the same cache,
coalesced to one message per object per second (live.py). Actions are ordinary API writes,
off unless started with --actions, and protected against cross-site requests (csrf.py)."""
