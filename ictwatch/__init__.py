"""ictwatch: monitoring and logging of a school network against its Staff use of ICT policy."""
