from utopia_handler.cli import main

main()
