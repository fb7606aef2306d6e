from app.manage.cli import main

main()
