"""Lantian gateway: turns stations' minute records into valid averages, exceedance flags
and AQI by the national rules, and publishes them over MQTT."""
