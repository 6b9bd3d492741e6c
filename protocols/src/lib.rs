//! ttrpc protocol between the layerpass host and guest agents (`protos/layerpass/v1`).
//! The messages arrive with the guest agent.
