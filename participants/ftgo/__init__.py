"""The FTGO food delivery example's services: consumer, kitchen, accounting, order."""
