from occtool.cli.app import main

main()
