from regbot.cli import entry

entry()
