"""The live dashboard: rolling figures per upstream and route, streamed to one HTML page."""
