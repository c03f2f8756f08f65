"""HTTP: health and readiness now; the API, live stream and console grow here."""
