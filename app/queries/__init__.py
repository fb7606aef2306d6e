"""All SQL, as named constants and thin functions over a psycopg2 cursor.

Nothing outside this package writes SQL (migrations, seeding and the dev
stack aside). Functions take the cursor of a connection the caller checked
out of the pool, so the caller decides the transaction boundaries.
"""
