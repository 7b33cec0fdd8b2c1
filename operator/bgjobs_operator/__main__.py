"""`python -m bgjobs_operator` / `bgjobs-operator`."""

from bgjobs_operator.main import main

if __name__ == "__main__":
    main()
