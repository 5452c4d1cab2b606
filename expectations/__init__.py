"""Great Expectations suites (JSON, in `suites/`) and the gate runner every stage shares."""
