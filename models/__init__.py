"""Example models that Sluice trains, registers and rolls out."""
