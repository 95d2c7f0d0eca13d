"""The run's glue, called by `locustfile.py`: options, the target, and what happens when.

It holds what belongs to no single room: the suite's command-line options, the embedded
reference gateway started when no target is given (and the loopback-only safety rule), and the
lifecycle that loads the scenario at every start, paces the users, and writes the run's files.
"""
