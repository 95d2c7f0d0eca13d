"""Judging and reporting: lossless histograms, run summaries, criteria, analysis and the report.

It consumes what users, shapes and monitors produce and never talks to the gateway.
"""
