"""Choreographed travel services: flight, hotel and car rental reacting to each other's
events on RabbitMQ, with nobody in charge.

The choreographed twin of the travel example (docs/choreography.md, "The demo"): a booking
starts with `com.example.travel.booking_started`; the flight service books a seat and
publishes `flight_booked` (or `flight_booking_failed`); the hotel books a room on
`flight_booked`; the car rental rents a car on `hotel_booked`. A refusal travels back as
events and each service undoes its own part: `car_rental_failed` makes the hotel cancel
(`hotel_cancelled`), which makes the flight cancel (`flight_cancelled`). Each service also
obeys a rescuer's command events (`cancel_flight`, `cancel_hotel`, `cancel_car`), which the
orchestrator publishes when it steps in on a stuck booking.

Each service is its own process (`python -m participants.choreography --service NAME`)
with its own SQLite file. It does not use the participant kit (no gRPC here) and imports
nothing of the orchestrator: events are CloudEvents 1.0, and that is the whole contract.

- `events`: the event types, and CloudEvents read from and written to AMQP messages.
- `state`: one service's SQLite state: inventory, bookings, the events it handled.
- `services`: the three services' rules (which events book, refuse, cancel).
- `consumer`: the RabbitMQ loop: consume, handle in one transaction, publish, ack.
"""
