from medviewer.cli import program

program()
