"""Ganglia: parsing gmond/gmetad XML (pure) and gmond's XDR protocol (encode + a thin sender)."""
