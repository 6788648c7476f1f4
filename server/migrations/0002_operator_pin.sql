-- roster-server store, schema 2: the operator pin (SetProducerPin), kept apart from the registrant's pin
-- (pinned_collector) so that a producer's own renewals never change it. NULL means no operator pin.
ALTER TABLE producers ADD COLUMN operator_pin TEXT;
