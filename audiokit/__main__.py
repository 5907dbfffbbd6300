from audiokit.cli import main

main()
