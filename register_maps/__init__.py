"""Modbus register maps (data only); read with importlib.resources.files("twin.register_maps")."""
