"""Lantian station firmware (MicroPython): sampling, calibration, minute records,
store-and-forward and the MQTT uplink. Imports only drivers/."""
