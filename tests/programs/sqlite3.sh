#!/usr/bin/env bash
# sqlite3: a few hundred thousand rows, indexes, joins and aggregates (in memory).
s=${SCALE:-1}
n=$((200000 * s))
exec sqlite3 :memory: <<SQL
CREATE TABLE a(id INTEGER PRIMARY KEY, g INTEGER, name TEXT);
CREATE TABLE b(id INTEGER PRIMARY KEY, a_id INTEGER, v REAL);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $n)
INSERT INTO a SELECT i, i % 1000, printf('name-%08d', (i * 7919) % $n) FROM c;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $n)
INSERT INTO b SELECT i, (i * 31) % $n + 1, (i % 977) * 1.5 FROM c;
CREATE INDEX a_g ON a(g);
CREATE INDEX b_a ON b(a_id);
CREATE INDEX a_name ON a(name);
SELECT count(*), sum(v) FROM a JOIN b ON b.a_id = a.id WHERE a.g < 500;
SELECT g, count(*), round(avg(v), 3) FROM a JOIN b ON b.a_id = a.id GROUP BY g ORDER BY g LIMIT 5;
SELECT name FROM a ORDER BY name DESC LIMIT 3;
DELETE FROM b WHERE v > 700;
SELECT count(*) FROM b;
SQL
