"""How many users or arrivals, when: the plan's ramps as data-driven Locust shapes.

- `timetable`: due times of open-model arrivals (Artillery phases), dealt to workers;
- `arrivals`: the arrival engine (idle pool, dropped arrivals) and its `ArrivalShape`;
- `stages`: k6-style VU stages, recomputed every tick;
- `burst`: N users ready, then M iterations each at once;
- `endurance`: the long flat or diurnal profile;
- `pacing`: the seam through which users are paced by any of these;
- `scenario`: the YAML scenario files that name all of the above.

Shapes never send requests themselves.
"""
