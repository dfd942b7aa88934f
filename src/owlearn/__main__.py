from owlearn.cli import main

main()
