"""CAN database files (data only); read with importlib.resources.files("twin.dbc")."""
