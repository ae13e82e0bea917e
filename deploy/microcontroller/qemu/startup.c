/* Cortex-M4F start for QEMU's mps2-an386: vector table, FPU on, then newlib's semihosting _start. */
extern unsigned long _estack;
extern void _start(void);
void Reset_Handler(void) {
  *(volatile unsigned long*)0xE000ED88 |= 0xFUL << 20; /* CPACR: CP10, CP11 full access */
  __asm volatile("dsb; isb");
  _start();
  for (;;) {}
}
/* A fault ends the run (semihosting SYS_EXIT, ADP_Stopped_RunTimeErrorUnknown) instead of hanging QEMU. */
void Fault_Handler(void) {
  register unsigned long op __asm__("r0") = 0x18;
  register unsigned long reason __asm__("r1") = 0x20023;
  __asm volatile("bkpt 0xab" : : "r"(op), "r"(reason) : "memory");
  for (;;) {}
}
__attribute__((section(".isr_vector"), used)) void (*const vectors[16])(void) = {
  (void (*)(void))&_estack, Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
};
