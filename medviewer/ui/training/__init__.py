"""The Model menu: Retrain (training child process, live curves, comparison) and Versions."""
