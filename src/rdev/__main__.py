from rdev.cli import main

main()
