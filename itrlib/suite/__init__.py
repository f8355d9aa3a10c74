"""The suite around the library: what the notebooks and ``make`` use (profiles, studies, report, notebook runner,
regression check, benchmarks). The library (every other subpackage of itrlib) never imports it."""
