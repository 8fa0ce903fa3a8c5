"""The ML platform's assets. Process-wide settings that must precede heavy imports live here."""

import os

# PyTorch's OpenMP threads spin while they wait for work; on a shared 2-core host one busy
# neighbour made a 3-second training take 20-67 s. Passive waiting costs nothing measurable here.
# Must be set before torch is first imported; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
