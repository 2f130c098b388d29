-- A facility's application (様式1) is told to the operators (issue 19): notices and mails
-- get the kind `facility_applied`.

ALTER TABLE notices DROP CONSTRAINT notices_kind_check;
ALTER TABLE notices ADD CONSTRAINT notices_kind_check
    CHECK (kind IN ('post', 'mention', 'invitation', 'account', 'test', 'facility_applied'));

ALTER TABLE mails DROP CONSTRAINT mails_kind_check;
ALTER TABLE mails ADD CONSTRAINT mails_kind_check
    CHECK (kind IN ('digest', 'invitation', 'setup_code', 'locked', 'password_reset', 'test',
        'facility_applied'));
