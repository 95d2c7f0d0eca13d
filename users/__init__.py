"""What one virtual user does against the gateway, through the target profile.

Users know nothing of shapes, criteria or reports: they implement `iteration()` and the load
model (`shapes.pacing`) decides when it runs.
"""
