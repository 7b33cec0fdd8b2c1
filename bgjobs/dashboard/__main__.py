from bgjobs.dashboard.server import main

main()
