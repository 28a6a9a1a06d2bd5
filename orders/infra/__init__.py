"""Infrastructure from the topology: provisioning, drift check, alarms, dashboard, generated docs."""
