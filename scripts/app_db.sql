-- The example's operational app database (think RDS): moderation reports on pins. Loaded into
-- PostgreSQL before `rsdbt build -t lake` (tests/it/postgres.rs does it; by hand:
-- psql -h 127.0.0.1 -p <port> -U postgres -f scripts/app_db.sql). Deterministic: 2,000 rows.
drop schema if exists app cascade;
create schema app;
create table app.reports (
    report_id   bigint primary key,
    pin_id      bigint not null,
    reason      text not null,
    reported_at timestamptz not null,
    resolved    boolean not null
);
insert into app.reports
select g,
       1 + (g * 37) % 6000,
       (array[' Spam', 'spam ', 'Nudity', 'Violence', 'Misinformation'])[1 + g % 5],
       timestamptz '2023-01-01 00:00:00+00' + g * interval '3 hours',
       g % 3 = 0
from generate_series(1, 2000) g;
