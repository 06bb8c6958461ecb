"""``auren demo``: real CrewAI crews of AUREN specialists on a scripted offline LLM.

Importing this package imports nothing heavy; :mod:`.runner` imports crewai when it runs.
"""
