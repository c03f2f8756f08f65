"""The registry: grids, devices, device-type profiles and payload codecs.

Everything that knows what a device *is* lives here; ingest only asks this room.
"""
