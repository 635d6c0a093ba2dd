from softswitch.cli import main

main()
