"""Deployment to Jetson and Raspberry Pi boards (issue 9): installers, USB MIDI gadget, service, doctor."""
