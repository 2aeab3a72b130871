"""`python -m radgpt ...` = the `radgpt` console script (for machines without the install)."""

from radgpt.cli import main

raise SystemExit(main())
